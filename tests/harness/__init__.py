"""Test ground: throwaway PostgreSQL, a local Kubernetes control plane, a container engine."""
