"""The console's pages and the admin JSON API: views only, over the admin services."""
