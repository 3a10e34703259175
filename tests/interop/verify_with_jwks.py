#!/usr/bin/env python3
"""Verify tokengate access tokens with PyJWT, through the published JWKS.

Usage: verify_with_jwks.py BASE_URL TOKEN...

For each token: fetch the signing key for its `kid` from
BASE_URL/.well-known/jwks.json, verify signature, algorithm, iss, aud, exp and
the `typ: at+jwt` header, and print the claims as one JSON line. Any failure
exits non-zero — this is how a third-party API gateway would check our tokens.
"""
import json
import sys

import jwt


def main() -> int:
    base, tokens = sys.argv[1].rstrip("/"), sys.argv[2:]
    jwks = jwt.PyJWKClient(f"{base}/.well-known/jwks.json", cache_keys=True)
    for token in tokens:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "at+jwt":
            raise SystemExit(f"unexpected typ {header.get('typ')!r}")
        key = jwks.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[header["alg"]],
            audience="tokengate",
            issuer="tokengate",
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
        print(json.dumps({"alg": header["alg"], "kid": header["kid"], "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
