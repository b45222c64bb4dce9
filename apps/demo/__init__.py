"""``framebroker demo``: every role on this machine, as separate processes.

It starts a broker, a sink, test-pattern producers and consumers (``framebroker``
commands, so each runs exactly as a user would run it) and shows their progress from the
broker's control port and the sink's store.

Installed as ``framebroker.demo``: an application above the roles. It may use the roles'
public modules; no role imports it.
"""
