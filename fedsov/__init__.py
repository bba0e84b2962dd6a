"""fedsov: sovereign federated learning over mTLS gRPC with DP-SGD sites."""

__version__ = "0.1.0"
