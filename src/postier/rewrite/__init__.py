"""Addresses (library, pure): parsing, extensions, mynetworks, the address classes of
trivial-rewrite(8), and cleanup(8)'s canonical mapping and virtual alias expansion.
"""
