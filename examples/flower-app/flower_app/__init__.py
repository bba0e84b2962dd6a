"""flower-app: a Flower ClientApp/ServerApp on scikit-learn's digits."""
