"""The embedded default data: seeded synthetic chest X-rays in the public datasets' folder layout."""
