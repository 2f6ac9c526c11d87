"""The README's configuration table names every setting the service reads."""

from pathlib import Path

from composition.settings import SPECS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    table = README.read_text(encoding="utf-8").split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [spec.env for spec in SPECS if f"`{spec.env}`" not in table]
    assert missing == []
