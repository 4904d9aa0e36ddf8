"""
The router's live page (C{--web-port}): one page of the session's agents,
links and rates, updated by server-sent events.

  - L{view}: what the page shows, built from the router's state (pure);
  - L{live}: the twisted.web resources: the page and its assets (shipped in
    C{static/}, nothing from elsewhere), C{/state.json}, and C{/events},
    the event stream every open page listens to.
"""

from ..program.listening import CannotServe, ListenConfig

# Where to serve the page (port None: nowhere), and the error when it cannot
# be served.
WebConfig = ListenConfig
WebUnavailable = CannotServe
