"""``idp clients``: relying parties (school portals)."""

from __future__ import annotations

import json
from typing import Any

import click

from idp.cli.common import fail, services
from idp.oauth.clients import ClientSpec, InvalidClientSettings, RegisteredClient, UnknownClient
from idp.oauth.scopes import ADMIN_SCOPES, DEFAULT_CLIENT_SCOPE


@click.group(help="Relying parties (school portals).")
def clients() -> None:
    pass


@clients.command("create", help="Register a client; prints its id and secret once.")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Required unless --admin-scope.")
@click.option("--post-logout-redirect-uri", "post_logout_uris", multiple=True)
@click.option("--backchannel-logout-uri")
@click.option("--public", is_flag=True, help="No secret; PKCE only (browser and mobile apps).")
@click.option("--first-party", is_flag=True, help="Skip the consent page.")
@click.option("--scope", help=f"Default: {DEFAULT_CLIENT_SCOPE}.")
@click.option("--id-token-alg", type=click.Choice(["RS256", "ES256"]), default="RS256")
@click.option("--allow-no-pkce", is_flag=True, help="Exempt a legacy confidential client from PKCE.")
@click.option(
    "--admin-scope",
    type=click.Choice(ADMIN_SCOPES),
    help="An admin API client (client credentials grant only), instead of a portal.",
)
@click.option(
    "--school", "schools", multiple=True, help="With --admin-scope: limit the client to this school code."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout and nothing else.")
def clients_create(
    name: str,
    redirect_uris: tuple[str, ...],
    post_logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    public: bool,
    first_party: bool,
    scope: str | None,
    id_token_alg: str,
    allow_no_pkce: bool,
    admin_scope: str | None,
    schools: tuple[str, ...],
    as_json: bool,
) -> None:
    if admin_scope is not None and scope is not None:
        fail("--scope is for portals; an admin API client has --admin-scope alone")
    if admin_scope is None and schools:
        fail("--school limits an admin API client; use it with --admin-scope")
    spec = ClientSpec(
        name=name,
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_uris),
        backchannel_logout_uri=backchannel_logout_uri,
        public=public,
        first_party=first_party,
        scope=scope or DEFAULT_CLIENT_SCOPE,
        id_token_alg=id_token_alg,
        allow_no_pkce=allow_no_pkce,
        admin_scope=admin_scope,
    )
    try:
        if admin_scope is not None:
            registered = services().admin_clients().register(spec, schools)
        else:
            registered = services().clients().create(spec)
    except InvalidClientSettings as error:
        fail(str(error))
    services().session.commit()
    _print_registered(registered, as_json)


def _print_registered(registered: RegisteredClient, as_json: bool) -> None:
    output: dict[str, str] = {"client_id": registered.client.client_id}
    if registered.client_secret:
        output["client_secret"] = registered.client_secret
    if as_json:
        click.echo(json.dumps(output))
        return
    click.echo(f"client_id      {output['client_id']}")
    if registered.client_secret:
        click.echo(f"client_secret  {registered.client_secret}   (shown once)")


@clients.command("list", help="List registered clients.")
@click.option("--json", "as_json", is_flag=True)
def clients_list(as_json: bool) -> None:
    rows = services().clients().all()
    if as_json:
        click.echo(json.dumps([_client_summary(c) for c in rows]))
        return
    for client in rows:
        kind = "public" if client.is_public else "confidential"
        party = "first-party" if client.is_first_party else "third-party"
        # An admin API client has no redirect URIs: its scope says what it is.
        target = client.admin_scope or " ".join(client.redirect_uris)
        click.echo(f"{client.client_id:26} {client.name:30} {kind:12} {party:11} {target}")


def _client_summary(client: Any) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "public": client.is_public,
        "first_party": client.is_first_party,
        "redirect_uris": client.redirect_uris,
        "scope": client.scope,
        "admin_scope": client.admin_scope,
    }


@clients.command("delete", help="Delete a client and everything issued to it.")
@click.argument("client_id")
def clients_delete(client_id: str) -> None:
    try:
        services().clients().delete(client_id)
    except UnknownClient:
        fail(f"no client with id {client_id!r}")
    services().session.commit()
    click.echo(f"deleted {client_id}", err=True)
