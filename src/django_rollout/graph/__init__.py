"""Loading, the deploy unit, OperationContext, collected SQL."""
