"""The bench's 3-step flow on Locust's fastest user class (the same flow as
``python -m bench.flows --flow three``): log in once per user, then a GET with the
bearer token and a POST with a JSON body whose answer is checked."""

import uuid

from locust import FastHttpUser, constant, task


class Shop(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        resp = self.client.post("/login", json={"user": "ann", "password": "pw"})
        self.token = resp.json()["token"]

    @task
    def shop(self) -> None:
        auth = {"Authorization": f"Bearer {self.token}"}
        self.client.get("/api/me", headers=auth)
        with self.client.post("/api/orders", headers=auth, catch_response=True,
                              json={"sku": str(uuid.uuid4()), "qty": 1, "user": "ann"}) as resp:
            if resp.status_code != 201 or resp.json().get("status") != "accepted":
                resp.failure("order not accepted")
