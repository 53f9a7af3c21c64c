"""Name resolution (library): /etc/hosts, then DNS through dnspython, and the answers
restrictions use.
"""
