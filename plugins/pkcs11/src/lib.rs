//! `pkcs11`: a keybroker backend whose keys live in an HSM (work in progress).
