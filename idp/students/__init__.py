"""Schools, students and the guardians linked to them."""
