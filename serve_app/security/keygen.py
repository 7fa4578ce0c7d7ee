"""`python -m serve_app.security.keygen NAME`: make a new secret and the config entry that accepts it."""

from __future__ import annotations

import argparse
import secrets

from serve_app.config import APIKey
from serve_app.security.auth import hash_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", help="key name, shown in logs, metrics and /v1/usage")
    parser.add_argument("--admin", action="store_true", help="may read GET /v1/usage")
    args = parser.parse_args()
    secret = "sk-" + secrets.token_urlsafe(32)
    key = APIKey(name=args.name, sha256=hash_key(secret), admin=args.admin)  # validates the name
    print(f"secret (give it to the user; it is not stored anywhere): {secret}")
    print("add under args.api_keys in your Serve config:")
    print(f"  - {{name: {key.name}, sha256: {key.sha256}" + (", admin: true" if key.admin else "") + "}")


if __name__ == "__main__":
    main()
