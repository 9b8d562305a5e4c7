# The seed app from "Async Middleware in FastAPI", as the seed writes it, with
# three changes for the benchmark (each marked "bench:"):
#   * the missing `from fastapi import HTTPException` is added;
#   * SIMULATED_IO=0 in the environment turns the asyncio.sleep calls off;
#   * AnotherAsyncMiddleware is registered so that its __call__ really runs.
import os  # bench: for SIMULATED_IO
import time
import asyncio # For asyncio.sleep to simulate async work
from fastapi import FastAPI, Request
from fastapi import HTTPException  # bench: missing from the seed
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware  # bench: see below

# bench: SIMULATED_IO=0 skips the simulated I/O (every asyncio.sleep below).
SIMULATED_IO = os.environ.get("SIMULATED_IO", "1") != "0"

app = FastAPI()

@app.middleware("http") # Decorator to register middleware
async def timing_and_custom_header_middleware(request: Request, call_next):
    print(f"Middleware: Request received for {request.url.path}")
    
    start_time = time.monotonic()
    
    # Simulate some async I/O work in the middleware before processing the request
    # e.g., checking something in a cache or an external service
    if SIMULATED_IO:  # bench
        await asyncio.sleep(0.01) 
    print("Middleware: Simulated async pre-processing complete.")

    # Process the request and get the response
    response = await call_next(request) # This calls the next middleware or the endpoint

    # Simulate some async I/O work after the response is generated
    # e.g., logging response details to an async service
    if SIMULATED_IO:  # bench
        await asyncio.sleep(0.005)
    print("Middleware: Simulated async post-processing complete.")

    process_time = time.monotonic() - start_time
    response.headers["X-Process-Time"] = str(process_time) # Add custom header
    response.headers["X-Custom-Middleware-Header"] = "Hello from Async Middleware!"
    
    print(f"Middleware: Response for {request.url.path} processed in {process_time:.4f}s")
    return response


# Example of a custom middleware class (alternative way)
class AnotherAsyncMiddleware:
    def __init__(self, app, some_option="default_value"):
        self.app = app
        self.some_option = some_option

    async def __call__(self, request: Request, call_next):
        print(f"AnotherAsyncMiddleware: Pre-processing with option '{self.some_option}' for {request.url.path}")
        
        # You can modify the request here if needed, or its scope
        # request.state.custom_data = "Data set by middleware"

        response = await call_next(request)
        
        print(f"AnotherAsyncMiddleware: Post-processing for {request.url.path}")
        response.headers["X-Another-Middleware"] = "Processed by class-based middleware"
        return response

# Add class-based middleware (note: no decorator for this way)
# app.add_middleware(AnotherAsyncMiddleware, some_option="custom_config_value")
# IMPORTANT: If you use `app.add_middleware`, it's added to the *end* of the existing
# middleware stack (including Starlette's defaults). `@app.middleware("http")` adds
# to the *start* (executed earlier). For precise ordering, using `app.add_middleware`
# for all custom middleware in the desired order is more explicit.
# For this example, we will keep the decorator style for the first one.
#
# bench: the seed's class has the `(request, call_next)` signature of a
# dispatch function, not the ASGI `(scope, receive, send)` one that
# `app.add_middleware(AnotherAsyncMiddleware, ...)` would call, so that line
# would fail on the first request. Register an instance as the dispatch
# function of a BaseHTTPMiddleware, which is exactly what `@app.middleware`
# does with a function. Added last, it is the outermost user middleware.
app.add_middleware(
    BaseHTTPMiddleware,
    dispatch=AnotherAsyncMiddleware(None, some_option="custom_config_value"),
)

@app.get("/")
async def read_root():
    print("Endpoint: read_root called.")
    # Access data set by middleware (if using class-based example with request.state)
    # custom_data = request.state.custom_data if hasattr(request.state, 'custom_data') else "N/A"
    # print(f"Endpoint: Custom data from middleware: {custom_data}")
    if SIMULATED_IO:  # bench
        await asyncio.sleep(0.1) # Simulate endpoint work
    return {"message": "Hello World"}

@app.get("/items/{item_id}")
async def read_item(item_id: int):
    print(f"Endpoint: read_item called for item_id {item_id}.")
    if SIMULATED_IO:  # bench
        await asyncio.sleep(0.05) # Simulate endpoint work
    if item_id == 99:
        # Middleware still runs for exceptions handled by FastAPI
        raise HTTPException(status_code=404, detail="Item 99 not found")
    return {"item_id": item_id}

# To run: uvicorn main:app --reload
# Access http://127.0.0.1:8000/ and check response headers and console logs.
# Access http://127.0.0.1:8000/items/1
