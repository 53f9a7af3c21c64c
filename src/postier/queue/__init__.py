"""The mail queue (library): queue file format, queue IDs, state directories and moves,
recovery.
"""
