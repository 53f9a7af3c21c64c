"""Lookup tables (library): Postfix's type:name maps behind one interface."""
