"""The back office's one door for writes: `backoffice.actions.AdminActions`.

Both admin surfaces (the UI under admin/ and the REST admin endpoints in gateway/rest_admin.py)
call it, so every admin write is authorized and audited in one place (docs/architecture.md).
"""
