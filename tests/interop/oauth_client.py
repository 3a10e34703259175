#!/usr/bin/env python3
"""Use tokengate with Authlib, a standard OAuth 2.0 client library.

Usage: oauth_client.py BASE_URL CLIENT_ID CLIENT_SECRET

Discovers the endpoints (RFC 8414), gets a token with client_credentials
(RFC 6749 §4.4) and HTTP Basic client authentication, refreshes it (§6),
introspects it (RFC 7662) and revokes it (RFC 7009), then introspects again.
Prints one JSON object with what it saw; exits non-zero on any surprise.
"""
import json
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session


def main() -> int:
    base, client_id, client_secret = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    meta = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=5).json()
    session = OAuth2Session(
        client_id,
        client_secret,
        token_endpoint_auth_method="client_secret_basic",
        scope="jobs",
    )
    first = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    assert first["token_type"] == "Bearer", first
    assert first["scope"] == "jobs", first
    refreshed = session.refresh_token(meta["token_endpoint"], refresh_token=first["refresh_token"])
    assert refreshed["access_token"] != first["access_token"], refreshed
    live = session.introspect_token(
        meta["introspection_endpoint"], token=refreshed["access_token"]
    ).json()
    assert live["active"] is True and live["client_id"] == client_id, live
    stale = session.introspect_token(
        meta["introspection_endpoint"], token=first["access_token"]
    ).json()
    assert stale == {"active": False}, stale
    revoked = session.revoke_token(meta["revocation_endpoint"], token=refreshed["refresh_token"])
    assert revoked.status_code == 200, revoked.text
    after = session.introspect_token(
        meta["introspection_endpoint"], token=refreshed["access_token"]
    ).json()
    assert after == {"active": False}, after
    print(
        json.dumps(
            {
                "first": first["access_token"],
                "refreshed": refreshed["access_token"],
                "live": live,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
