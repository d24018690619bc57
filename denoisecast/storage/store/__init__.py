"""
The store: every query DenoiseCast makes, as methods that return Deferreds,
split by domain (users, sessions, friends, prefs, recordings).

Each public method hands a ``thd_*`` function to the database pool; those
functions hold the SQL, run on a pool thread inside one transaction and
return plain dicts.  The store knows nothing of HTTP; it reports expected
conflicts with the small exceptions below, which the service layer turns
into user-facing errors.
"""

from __future__ import annotations

from denoisecast.storage.database import Database
from denoisecast.storage.store.common import (
    AlreadyFriends,
    NoSuchRequest,
    NotFriends,
    RequestExists,
    User,
    UsernameTaken,
    utc,
)
from denoisecast.storage.store.friends import FriendStore
from denoisecast.storage.store.prefs import PrefStore
from denoisecast.storage.store.recordings import RecordingStore
from denoisecast.storage.store.sessions import SessionStore
from denoisecast.storage.store.users import UserStore

__all__ = [
    "AlreadyFriends",
    "NoSuchRequest",
    "NotFriends",
    "RequestExists",
    "Store",
    "User",
    "UsernameTaken",
    "utc",
]


class Store(UserStore, SessionStore, FriendStore, PrefStore, RecordingStore):
    """
    Deferred-returning access to everything DenoiseCast keeps in the database:
    one object, its methods grouped by domain in the modules beside this one.
    """

    def __init__(self, database: Database) -> None:
        self.db = database
