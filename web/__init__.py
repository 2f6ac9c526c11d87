"""The kit both entry points stand on: what the REST/websocket gateway (gateway/) and the admin UI
(admin/) share, so that neither imports the other. The typed request context (`context.AppContext`),
the error codes and bodies (`errors`), the JSON handler and strict field readers (`http`), the
sign-in guard (`signin`), the lot and session readers (`catalog_fields`), liveness, readiness and
metrics (`health`, `observability`). It imports persistence and the services below it, never an
entry point or composition."""
