"""Locust's fastest user class against the bench nginx: one GET of the static file, no wait."""

from locust import FastHttpUser, constant, task


class Static(FastHttpUser):
    wait_time = constant(0)

    @task
    def static(self) -> None:
        self.client.get("/index.txt")
