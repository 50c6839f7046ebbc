//! Azure Key Vault fake (work in progress).
