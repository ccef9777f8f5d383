from tests.conftest import bearer


async def test_customer_reads_own_profile(client, customer):
    response = await client.get("/api/v1/users/me", headers=bearer(customer))
    assert response.status_code == 200
    assert response.json()["username"] == "customer1"
