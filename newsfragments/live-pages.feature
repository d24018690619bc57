The home page can go live with the microphone (denoise on/off and strength while live) and lists friends who are live, with Listen, a raw/denoised switch and Stop listening.
