"""
The router's live page (C{--web-port}): one page of the session's agents,
links and rates, updated by server-sent events.

  - L{view}: what the page shows, built from the router's state (pure);
  - L{live}: the twisted.web resources: the page and its assets (shipped in
    C{static/}, nothing from elsewhere), C{/state.json}, and C{/events},
    the event stream every open page listens to.
"""

from dataclasses import dataclass

DEFAULT_ADDRESS = "127.0.0.1"


@dataclass(frozen=True)
class WebConfig:
    """
    Where to serve the page: C{port} C{None} for nowhere.
    """

    port: int = None
    address: str = DEFAULT_ADDRESS


class WebUnavailable(Exception):
    """
    The web port could not be listened on; the message says why.
    """
