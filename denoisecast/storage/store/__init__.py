"""
The store: every query DenoiseCast makes, as methods that return Deferreds,
split by domain (users, sessions, friends, prefs, recordings, tokens, node leases).

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
    TooManyTokens,
    User,
    UsernameTaken,
    utc,
)
from denoisecast.storage.store.friends import (  # the thd_* functions, for other storage modules
    FriendStore,
    thd_accept_request,
    thd_are_friends,
    thd_cancel_request,
    thd_list_friends,
    thd_list_requests,
    thd_reject_request,
    thd_send_request,
    thd_unfriend,
)
from denoisecast.storage.store.nodes import NodeStore
from denoisecast.storage.store.prefs import (  # the thd_* functions, for other storage modules
    PrefStore,
    thd_get_denoise_prefs,
    thd_set_denoise_prefs,
)
from denoisecast.storage.store.recordings import (  # the thd_* functions, for other storage modules
    RECORDING_COLUMNS,
    RecordingStore,
    thd_create_recording,
    thd_delete_recording,
    thd_get_visible_recording,
    thd_list_visible_recordings,
    thd_ping,
    thd_storage_used,
    thd_unfinished_recordings,
    thd_update_recording,
)
from denoisecast.storage.store.sessions import (  # the thd_* functions, for other storage modules
    SessionStore,
    thd_create_session,
    thd_delete_expired_sessions,
    thd_delete_session,
    thd_get_session_user,
)
from denoisecast.storage.store.tokens import (  # the thd_* functions, for other storage modules
    TokenStore,
    thd_create_token,
    thd_delete_token,
    thd_list_tokens,
    thd_token_user,
    thd_touch_token,
)
from denoisecast.storage.store.users import (  # the thd_* functions, for other storage modules
    UserStore,
    thd_create_user,
    thd_get_login,
    thd_get_password_hash,
    thd_get_user_by_name,
    thd_search_users,
    thd_set_password,
)

__all__ = [
    "RECORDING_COLUMNS",
    "thd_accept_request",
    "thd_are_friends",
    "thd_cancel_request",
    "thd_create_recording",
    "thd_create_session",
    "thd_create_token",
    "thd_create_user",
    "thd_delete_expired_sessions",
    "thd_delete_recording",
    "thd_delete_session",
    "thd_delete_token",
    "thd_get_denoise_prefs",
    "thd_get_login",
    "thd_get_password_hash",
    "thd_get_session_user",
    "thd_get_user_by_name",
    "thd_get_visible_recording",
    "thd_list_friends",
    "thd_list_requests",
    "thd_list_tokens",
    "thd_list_visible_recordings",
    "thd_ping",
    "thd_reject_request",
    "thd_search_users",
    "thd_send_request",
    "thd_set_denoise_prefs",
    "thd_set_password",
    "thd_storage_used",
    "thd_token_user",
    "thd_touch_token",
    "thd_unfinished_recordings",
    "thd_unfriend",
    "thd_update_recording",
    "AlreadyFriends",
    "NoSuchRequest",
    "NotFriends",
    "RequestExists",
    "Store",
    "TooManyTokens",
    "User",
    "UsernameTaken",
    "utc",
]


class Store(UserStore, SessionStore, FriendStore, PrefStore, RecordingStore, TokenStore, NodeStore):
    """
    Deferred-returning access to everything DenoiseCast keeps in the database:
    one object, its methods grouped by domain in the modules beside this one.
    """

    def __init__(self, database: Database) -> None:
        self.db = database
