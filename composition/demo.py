"""The demo data `make run` seeds on first start (SEED_DEMO): three sessions (live, upcoming, ended)
whose lots have pictures, descriptions and specifications, two courses, a degree with two mentors
(composition/demo_degree.py), two bidders.

The pictures are drawn here with Pillow (a gradient, a simple vessel, the catalogue number) and
stored through the media store, so they get their WebP variants like any upload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import io
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from composition.demo_articles import seed_demo_articles
from composition.demo_degree import seed_demo_degree
from composition.demo_feed import seed_demo_feed
from composition.demo_learning import seed_demo_outline
from persistence.catalog import LotSpec, SessionSpec, Spec
from persistence.media import MediaStore
from web.context import AppContext

DEMO_BIDDERS = (("alice", "alice-demo-pass"), ("bob", "bob-demo-pass"))
IMAGE_SIZE = (1200, 900)

# (top colour, bottom colour, vessel colour) per picture; a lot's pictures take consecutive ones.
PALETTES = (
    ((214, 228, 222), (120, 160, 150), (88, 140, 128)),  # celadon
    ((232, 236, 246), (120, 140, 190), (40, 70, 150)),  # blue and white
    ((246, 232, 214), (190, 140, 100), (150, 90, 60)),  # terracotta
    ((240, 236, 228), (170, 160, 140), (90, 80, 70)),  # ink
    ((250, 240, 220), (210, 170, 90), (170, 120, 30)),  # gilt
    ((236, 226, 236), (150, 120, 150), (110, 70, 110)),  # aubergine
)


def demo_picture(label: str, caption: str, index: int, shape: str = "vase") -> bytes:
    """A 1200 x 900 JPEG: a vertical gradient, a vessel silhouette, the label and a caption."""
    top, bottom, ink = PALETTES[index % len(PALETTES)]
    width, height = IMAGE_SIZE
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(Image.new("RGB", IMAGE_SIZE, bottom), Image.new("RGB", IMAGE_SIZE, top), gradient)
    draw = ImageDraw.Draw(image)
    cx, base = width // 2 + (index % 3 - 1) * 120, 760
    draw.ellipse((cx - 330, base - 30, cx + 330, base + 40), fill=tuple(c - 25 for c in bottom))  # shadow
    if shape == "bowl":
        draw.chord((cx - 280, 330, cx + 280, 770), 0, 180, fill=ink)
        draw.ellipse((cx - 280, 500, cx + 280, 580), fill=tuple(min(255, c + 60) for c in ink))
    elif shape == "jar":
        draw.ellipse((cx - 240, 300, cx + 240, 760), fill=ink)
        draw.rectangle((cx - 110, 250, cx + 110, 330), fill=ink)
    else:  # a vase: a profile swept from a few sine curves
        points = []
        for step in range(41):
            y = 220 + step * 13.5
            r = 70 + 150 * math.sin(math.pi * step / 48) ** 2 + 25 * math.sin(step / 4)
            points.append((cx + r, y))
        draw.polygon(points + [(2 * cx - x, y) for x, y in reversed(points)], fill=ink)
    glaze = tuple(min(255, c + 90) for c in ink)
    first, half = (630, 230) if shape == "bowl" else (420, 170)
    for ring in range(2 if shape == "bowl" else 3):  # painted bands
        y = first + ring * (60 if shape == "bowl" else 90)
        draw.arc((cx - half, y - 40, cx + half, y + 40), 20, 160, fill=glaze, width=6)
    font = ImageFont.load_default(size=88)
    small = ImageFont.load_default(size=36)
    draw.text((60, 50), label, fill=(40, 40, 40), font=font)
    draw.text((64, 160), caption, fill=(70, 70, 70), font=small)
    draw.text((width - 330, height - 70), "Gavel demo", fill=(255, 255, 255), font=small)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


async def stored_pictures(ctx: AppContext, drawings: Sequence[tuple[str, str, int, str]]) -> list[str]:
    """Store the drawings through the media store; their public URLs. Only the originals are written
    here: the start's background backfill (composition/service.py) makes their variants, so the
    first start answers sooner."""
    if ctx.media_dir is None:
        return ["" for _ in drawings]
    store = MediaStore(Path(ctx.media_dir), index=ctx.catalog.media)
    base = ctx.base_url.rstrip("/")

    async def one(label: str, caption: str, index: int, shape: str) -> str:
        data = await asyncio.to_thread(demo_picture, label, caption, index, shape)
        return base + (await store.save_original(data)).path

    return list(await asyncio.gather(*(one(*drawing) for drawing in drawings)))


def specs(*pairs: tuple[str, str]) -> tuple[Spec, ...]:
    return tuple(Spec(key, value) for key, value in pairs)


# (the pictures' shape, how many, the lot without images)
LIVE_LOTS: tuple[tuple[str, int, LotSpec], ...] = (
    (
        "bowl",
        3,
        LotSpec(
            "001",
            "青瓷碗 Celadon bowl, Song style",
            start_price=100_00,
            unit=10_00,
            reserve_price=300_00,
            highest_price=800_00,
            description="宋式青瓷碗，釉色温润，开片自然。A Song-style celadon bowl with a soft, "
            "even glaze and natural crackle.",
            specs=specs(
                ("尺寸 Size", "口径 16 cm，高 7 cm"),
                ("材质 Material", "瓷 Porcelain"),
                ("年代 Period", "当代仿宋 Contemporary, Song style"),
                ("品相 Condition", "完好 Fine"),
            ),
        ),
    ),
    (
        "vase",
        2,
        LotSpec(
            "002",
            "青花缠枝莲纹瓶 Blue-and-white vase",
            start_price=500_00,
            unit=50_00,
            highest_price=2_000_00,
            description="青花缠枝莲纹，发色浓艳。Lotus scrolls in a deep cobalt blue.",
            specs=specs(
                ("尺寸 Size", "高 32 cm"),
                ("材质 Material", "瓷 Porcelain"),
                ("年代 Period", "清代风格 Qing style"),
            ),
        ),
    ),
    (
        "bowl",
        2,
        LotSpec(
            "003",
            "茶具四件套 Tea set for four",
            start_price=80_00,
            unit=5_00,
            highest_price=300_00,
            description="一壶三杯，日常可用。A teapot and three cups, made to be used.",
            specs=specs(("件数 Pieces", "4"), ("材质 Material", "紫砂 Yixing clay")),
        ),
    ),
    (
        "jar",
        3,
        LotSpec(
            "004",
            "大罐（单品保证金）Large jar (per-lot deposit)",
            start_price=1_000_00,
            unit=None,
            reserve_price=2_000_00,
            deposit=200_00,
            increment_bands=((1_000_00, 5_00), (5_000_00, 20_00), (None, 100_00)),
            description="大型储物罐，需缴纳单品保证金后出价。A large storage jar; bidding needs a "
            "deposit for this lot.",
            specs=specs(
                ("尺寸 Size", "高 48 cm，腹径 40 cm"),
                ("材质 Material", "陶 Stoneware"),
                ("年代 Period", "民国 Republic era"),
                ("重量 Weight", "12 kg"),
            ),
        ),
    ),
    (
        "bowl",
        2,
        LotSpec(
            "005",
            "粉彩花卉盘 Famille-rose dish",
            start_price=300_00,
            unit=20_00,
            reserve_price=600_00,
            highest_price=1_200_00,
            description="粉彩牡丹，边饰金彩。Peonies in famille-rose enamels with a gilt rim.",
            specs=specs(
                ("尺寸 Size", "直径 26 cm"),
                ("材质 Material", "瓷 Porcelain"),
                ("年代 Period", "二十世纪 20th century"),
            ),
        ),
    ),
    (
        "vase",
        3,
        LotSpec(
            "006",
            "黑釉梅瓶 Black-glazed meiping",
            start_price=800_00,
            unit=50_00,
            deposit=100_00,
            highest_price=3_000_00,
            description="小口丰肩，黑釉光亮。A small-mouthed, broad-shouldered vase in a lustrous black "
            "glaze.",
            specs=specs(
                ("尺寸 Size", "高 28 cm"),
                ("材质 Material", "瓷 Porcelain"),
                ("窑口 Kiln", "磁州窑风格 Cizhou style"),
            ),
        ),
    ),
    (
        "bowl",
        2,
        LotSpec(
            "007",
            "白瓷小杯一对 Pair of white cups",
            start_price=50_00,
            unit=5_00,
            description="德化白瓷，胎薄如纸。Dehua white porcelain, thin as paper.",
            specs=specs(
                ("件数 Pieces", "2"), ("尺寸 Size", "口径 6 cm"), ("材质 Material", "白瓷 Blanc de Chine")
            ),
        ),
    ),
    (
        "jar",
        2,
        LotSpec(
            "008",
            "三彩马 Sancai horse (figure)",
            start_price=2_000_00,
            unit=100_00,
            reserve_price=5_000_00,
            highest_price=9_000_00,
            description="仿唐三彩，釉色流淌。A Tang-style three-colour figure with running glazes.",
            specs=specs(
                ("尺寸 Size", "高 36 cm，长 40 cm"),
                ("材质 Material", "陶 Earthenware"),
                ("年代 Period", "当代 Contemporary"),
            ),
        ),
    ),
)

UPCOMING_LOTS: tuple[tuple[str, int, LotSpec], ...] = (
    (
        "jar",
        2,
        LotSpec(
            "101",
            "紫檀笔筒 Zitan brush pot",
            start_price=1_500_00,
            unit=100_00,
            reserve_price=3_000_00,
            description="紫檀整挖，包浆自然。Carved from one piece of zitan, with a natural patina.",
            specs=specs(("尺寸 Size", "高 15 cm，直径 12 cm"), ("材质 Material", "紫檀 Zitan wood")),
        ),
    ),
    (
        "bowl",
        2,
        LotSpec(
            "102",
            "端砚 Duan inkstone",
            start_price=600_00,
            unit=50_00,
            description="端溪老坑石，附原配木盒。Old-pit Duan stone with its fitted box.",
            specs=specs(
                ("尺寸 Size", "18 × 12 × 3 cm"),
                ("材质 Material", "端石 Duan stone"),
                ("附件 Accessories", "木盒 Wooden box"),
            ),
        ),
    ),
    (
        "jar",
        3,
        LotSpec(
            "103",
            "铜香炉 Bronze censer",
            start_price=2_500_00,
            unit=100_00,
            reserve_price=4_000_00,
            highest_price=8_000_00,
            description="宣德款铜炉，皮壳温润。A bronze censer with a Xuande mark and a warm patina.",
            specs=specs(
                ("尺寸 Size", "口径 14 cm"),
                ("材质 Material", "铜 Bronze"),
                ("款识 Mark", "大明宣德年制"),
                ("重量 Weight", "1.6 kg"),
            ),
        ),
    ),
)

ENDED_LOTS: tuple[tuple[str, int, LotSpec], ...] = (
    (
        "jar",
        2,
        LotSpec(
            "201",
            "竹雕笔筒 Carved bamboo brush pot",
            start_price=200_00,
            unit=20_00,
            description="竹雕山水人物。Bamboo carved with a landscape and figures.",
            specs=specs(("尺寸 Size", "高 14 cm"), ("材质 Material", "竹 Bamboo")),
        ),
    ),
    (
        "bowl",
        2,
        LotSpec(
            "202",
            "汝窑风格洗 Ru-style brush washer",
            start_price=400_00,
            unit=20_00,
            reserve_price=1_000_00,
            description="天青釉，蟹爪纹。Sky-blue glaze with crab-claw crackle.",
            specs=specs(
                ("尺寸 Size", "口径 13 cm"),
                ("材质 Material", "瓷 Porcelain"),
                ("年代 Period", "当代 Contemporary"),
            ),
        ),
    ),
)


async def seed_demo(ctx: AppContext) -> int | None:
    """On first start only: a live session (8 lots, opening seconds after start; its id is returned),
    an upcoming one with a session deposit, one that ends a minute after start, and two funded bidders."""
    if await ctx.db.sessions.count_documents({}, limit=1):
        return None
    sessions = (
        ("A", "春季瓷器专场 Spring ceramics", 0, LIVE_LOTS),
        ("B", "文房雅玩专场 Scholar's studio (upcoming)", 500_00, UPCOMING_LOTS),
        ("C", "竹木牙角专场 Bamboo and wood (ended)", 0, ENDED_LOTS),
    )
    drawings: list[tuple[str, str, int, str]] = []
    for letter, title, _deposit, lots in sessions:
        drawings.append((f"Session {letter}", title.split(" ", 1)[1], len(drawings), "vase"))
        for shape, count, lot in lots:
            english = lot.title.split(" ", 1)[1]
            for view in range(count):
                caption = f"{english} - view {view + 1}/{count}"
                drawings.append((f"No. {lot.catalogue_no}", caption, len(drawings), shape))
    urls = iter(await stored_pictures(ctx, drawings))  # drawn before the clock starts: the live
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)  # session opens 5 s after
    windows = (
        (now, now + datetime.timedelta(seconds=5), now + datetime.timedelta(hours=2)),
        (
            now + datetime.timedelta(days=1),
            now + datetime.timedelta(days=2),
            now + datetime.timedelta(days=2, hours=3),
        ),
        # Ends a minute after the first start (nobody bids: its lots pass), then shows as ended.
        (now, now + datetime.timedelta(seconds=5), now + datetime.timedelta(seconds=65)),
    )
    live_id: int | None = None
    for (letter, title, deposit, lots), (preview_end, start, end) in zip(sessions, windows, strict=True):
        cover = next(urls)
        session = await ctx.catalog.create_session(
            SessionSpec(
                title=title,
                preview_start=now,
                preview_end=preview_end,
                bidding_start=start,
                bidding_end=end,
                deposit=deposit,
                soft_close_seconds=60,
                soft_close_cap_seconds=600,
                description=(
                    f"演示专场 {letter}：以 alice 或 bob 登录出价。"
                    f"Demo session {letter}, seeded by make run; bid as alice or bob."
                ),
                cover=cover,
            )
        )
        session_id = int(session["_id"])
        live_id = session_id if live_id is None else live_id
        for _shape, count, lot in lots:
            images = tuple(url for url in (next(urls) for _ in range(count)) if url)
            await ctx.catalog.create_lot(session_id, dataclasses.replace(lot, images=images))

    async def bidder(username: str, password: str) -> None:
        user_id, _token = await ctx.accounts.register(username, password)
        await ctx.accounts.credit(user_id, 10_000_00, "admin_credit", f"demo-credit:{username}")

    # At once: each registration hashes its password (scrypt, in a thread).
    await asyncio.gather(*(bidder(username, password) for username, password in DEMO_BIDDERS))
    # Independent of one another (the feed needs only the bidders and the live lot): seeded at once,
    # so the first start answers sooner.
    await asyncio.gather(
        seed_demo_courses(ctx),
        seed_demo_feed(ctx),  # the community: profiles, topics, posts (composition/demo_feed.py)
        seed_demo_articles(ctx),  # the community: sources and articles (composition/demo_articles.py)
    )
    return live_id


async def seed_demo_courses(ctx: AppContext) -> None:
    """Two online courses with price policies, so the shop has something to sell on first start."""
    shop = ctx.shop
    assert shop is not None  # built by start_shop before the demo is seeded
    top = await shop.create_category("Programming", None)
    sub = await shop.create_category("Python", int(top["_id"]))
    courses = (
        ("Python for auction engineers", "beginner", ((30, 99_00), (90, 249_00))),
        ("Asyncio in depth", "advanced", ((60, 199_00),)),
    )
    for order, (name, level, policies) in enumerate(courses):
        course = await shop.create_course(
            {
                "name": name,
                "image": "",
                "sub_category_id": int(sub["_id"]),
                "course_type": "paid",
                "degree_course_id": None,
                "brief": "Seeded by make run.",
                "level": level,
                "status": "online",
                "order": order,
                "period_days": 7,
                "attachment_path": "",
            }
        )
        for valid_days, price in policies:
            await shop.add_policy("course", int(course["_id"]), valid_days, price)
        await seed_demo_outline(shop, int(course["_id"]), order)  # chapters: free previews and paid
    await seed_demo_degree(ctx)  # the degree, its homework and the mentors mentor1 / mentor2
