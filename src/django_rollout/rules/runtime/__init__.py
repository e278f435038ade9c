"""The running application (A6xx)."""
