"""Who an RTMP client is, from its URL's query: `user=` and `password=` (checked as Login
checks them: auth.Auth.verify over the password's MD5, with its throttling), or the
`session=` of a REST login. With http.bAuth off everyone is let in.

Publishing takes an Operator or higher; playing a Viewer or higher. RTMP has no
challenge to answer, so the credentials ride in the URL: RTMPS keeps them off the wire.
"""

from __future__ import annotations

import hashlib

from gateway.auth import ROLE_RANK, Auth, AuthError, Session


class LoginRefused(Exception):
    """The client may not do what it asked; the message is safe to send it."""


async def check(auth: Auth | None, query: dict[str, str], least_role: str, address: str) -> Session | None:
    """LoginRefused unless the query's credentials are of `least_role` or higher (`auth`
    None: logins are off); the session if they were a `session=`."""
    if auth is None:
        return None
    session = None
    try:
        if "session" in query:
            session = auth.check(query["session"])
            role = session.role
        elif "user" in query:
            md5 = hashlib.md5(query.get("password", "").encode()).hexdigest()
            role = await auth.verify(query["user"], md5, address)
        else:
            raise LoginRefused("credentials required: add ?user=NAME&password=PASS to the stream name")
    except AuthError as e:
        raise LoginRefused(str(e)) from None
    if ROLE_RANK.get(role, -1) < ROLE_RANK[least_role]:
        raise LoginRefused(f"role {role} is not allowed: this takes {least_role} or higher")
    return session
