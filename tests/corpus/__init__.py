"""Test inputs. The image files are not kept here: ``make_images`` builds them at test time."""
