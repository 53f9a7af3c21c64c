"""What qmgr and the delivery agents share (library): delivery statuses and the delivery
request protocol.
"""
