"""The one way into the queue (library): header processing, Received:, and the committed queue
file.
"""
