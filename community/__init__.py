"""The community (docs/community.md): the auction app's feed (动态: profiles, follows, topics, posts,
views, likes, threaded comments) and the shop's articles (深科技: sources, scheduled articles,
comments, likes, collections over articles and courses), with reports and moderation.

A package of its own at the services layer: it decides (limits, threading, visibility, counters'
rules, Markdown sanitising), over small ports (`community/ports.py`) that `persistence/community/`
implements on MongoDB and Redis. It imports neither the shop nor the engine: a post's link to a
lot is an id the gateway resolves.
"""
