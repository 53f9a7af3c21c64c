"""The master process (program): binds the sockets, starts, watches and restarts the other
processes.
"""
