"""The command line through `lookalike serve`, while a server holds the Milvus Lite database.

Milvus Lite lets one process open a database. `lookalike serve` therefore records where it listens
beside the database (``record``), and a command that finds a live record sends its request there
(``client``) instead of failing on the database's lock.
"""
