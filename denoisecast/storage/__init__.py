"""
Storage: the database pool, the schema and its migrations, and the store.

Everything outside this package reaches the database only through
L{denoisecast.storage.store.Store}, whose methods return Deferreds and run
their SQL on the database thread pool.
"""
