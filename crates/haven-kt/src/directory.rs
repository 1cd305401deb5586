//! The key directory's client side: the server's signed epoch roots and verification of akd
//! lookup, history and audit proofs (filled in by the directory work of issue 11).
