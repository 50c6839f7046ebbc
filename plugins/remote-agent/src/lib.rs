//! The agent gateway (issue 8): placeholder while it is written.
