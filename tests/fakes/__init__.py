"""Stand-ins for services that cannot run here (the Scaleway cloud), served for real over TCP."""
