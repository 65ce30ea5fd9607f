"""The Slack-facing process: CLI, HTTP server, Bolt app, listeners and block builders."""
