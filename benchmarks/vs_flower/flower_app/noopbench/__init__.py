"""No-op Flower app: the ClientApp returns what it received; the ServerApp runs FedAvg."""
