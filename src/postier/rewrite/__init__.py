"""Addresses (library, pure): parsing, extensions, mynetworks and the address classes of
trivial-rewrite(8).
"""
