"""Wall-clock settings of a node: a configured skew, and the override file it follows."""
