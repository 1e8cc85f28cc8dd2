"""Wire contracts: the messages Inventiv's services exchange over NATS. No I/O lives here."""
