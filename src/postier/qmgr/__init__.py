"""The queue manager (program): moves messages through the queue and hands recipients to
transports.
"""
