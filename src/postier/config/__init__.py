"""Configuration (library, pure but for reading files): the parameter registry and the
main.cf/master.cf parsers.
"""
