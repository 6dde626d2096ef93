"""Origin: media library, ffmpeg packaging, torrents for published media, origin HTTP server."""
