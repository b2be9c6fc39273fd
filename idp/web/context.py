"""What a view reads of the request besides its form: the services, the OP session, who is asking."""

from __future__ import annotations

from flask import current_app, request

from idp.accounts.models import OPSession
from idp.accounts.service import SignInContext
from idp.mail.delivery import FileTransport, deliver_due
from idp.oauth.server import OAuthServer
from idp.services import Services
from idp.web.cookies import device_cookie_name, session_cookie_name

SERVICES_KEY = "idp.services"
OAUTH_SERVER_KEY = "idp.oauth_server"
OP_SESSION_KEY = "idp.op_session"
# Longer User-Agent strings are cut: the audit trail needs to recognise a browser, not store essays.
MAX_USER_AGENT = 256


def services() -> Services:
    """Return the app's services (built once by ``create_app``)."""
    built: Services = current_app.extensions[SERVICES_KEY]
    return built


def oauth_server() -> OAuthServer:
    """Return the app's Authlib authorization server."""
    server: OAuthServer = current_app.extensions[OAUTH_SERVER_KEY]
    return server


def browser_session() -> str | None:
    """The browser's OP session cookie, as it came."""
    return request.cookies.get(session_cookie_name())


def current_op_session() -> OPSession | None:
    """Return the browser's live OP session, looked up once per request."""
    # Cached on the request, not on ``g``: an app context may outlive one request.
    if OP_SESSION_KEY not in request.environ:
        request.environ[OP_SESSION_KEY] = services().sessions().find(browser_session())
    found: OPSession | None = request.environ[OP_SESSION_KEY]
    return found


def client_ip() -> str | None:
    # The client once ProxyFix (IDP_TRUSTED_PROXIES) has run.
    return request.remote_addr


def user_agent() -> str | None:
    """The browser's User-Agent as the audit trail keeps it: bounded, printable."""
    value = request.headers.get("User-Agent")
    if value is None:
        return None
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in value[:MAX_USER_AGENT])


def signin_context(client_id: str | None = None) -> SignInContext:
    """Return who is signing in: address, browser, the devices its device cookie vouches for,
    and the portal (``client_id``) of the authorization request it is for."""
    trusted = services().devices.read(request.cookies.get(device_cookie_name()))
    return SignInContext(
        ip_address=client_ip(), user_agent=user_agent(), devices=trusted, client_id=client_id
    )


def deliver_mail_now() -> None:
    """Write due mail at once when it goes to files (development); SMTP is the worker's job."""
    built = services()
    if isinstance(built.mail_transport, FileTransport):
        deliver_due(
            built.session, built.mail_transport, sender=built.settings.mail_from, clock=built.clock, limit=10
        )
