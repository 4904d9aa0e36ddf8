"""
The organiser's tools: C{ioppy-session} (L{credentials}), which makes a
session's vhost, users, permissions, limits and grants on the broker.
"""
