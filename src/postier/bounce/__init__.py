"""Delivery status notifications (library, pure): RFC 3464 bounce messages as bounce(8) writes
them.
"""
