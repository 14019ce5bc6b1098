"""The life of a DMP: creation from the INS identity, access management, closure, destruction,
retention. The repository runs these operations; this package holds their data shapes."""
