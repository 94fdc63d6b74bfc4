"""Media: locating ffmpeg and probing files. Every ffmpeg call and every probe goes through here."""
