--
-- PostgreSQL database dump
--

\restrict dTzM2Vx0wKq5b9YJpQ1cE4fL7nR3sA8uH6gB2iC0kX5mN9oP4rS1tU7vW3yZ6aD

-- Dumped from database version 15.14 (Debian 15.14-1.pgdg120+1)
-- Dumped by pg_dump version 15.14 (Debian 15.14-1.pgdg120+1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

--
-- Name: customers customers_email_key; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.customers
    ADD CONSTRAINT customers_email_key UNIQUE (email);


--
-- Name: customers customers_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.customers
    ADD CONSTRAINT customers_pkey PRIMARY KEY (id);


--
-- Name: orders orders_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT orders_pkey PRIMARY KEY (id, placed_at);


--
-- Name: orders_2024 orders_2024_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.orders_2024
    ADD CONSTRAINT orders_2024_pkey PRIMARY KEY (id, placed_at);


--
-- Name: orders_customer_idx; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX orders_customer_idx ON ONLY public.orders USING btree (customer_id);


--
-- Name: orders_2024_customer_id_idx; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX orders_2024_customer_id_idx ON public.orders_2024 USING btree (customer_id);


--
-- Name: Line Items_sku_idx; Type: INDEX; Schema: Sales; Owner: postgres
--

CREATE INDEX "Line Items_sku_idx" ON "Sales"."Line Items" USING btree (sku) WHERE (qty > 0);


--
-- Name: orders_2024_customer_id_idx; Type: INDEX ATTACH; Schema: public; Owner: postgres
--

ALTER INDEX public.orders_customer_idx ATTACH PARTITION public.orders_2024_customer_id_idx;


--
-- Name: orders_2024_pkey; Type: INDEX ATTACH; Schema: public; Owner: postgres
--

ALTER INDEX public.orders_pkey ATTACH PARTITION public.orders_2024_pkey;


--
-- Name: customers customers_touch; Type: TRIGGER; Schema: public; Owner: postgres
--

CREATE TRIGGER customers_touch BEFORE UPDATE ON public.customers FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();


--
-- Name: orders orders_customer_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE public.orders
    ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES public.customers(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--

\unrestrict dTzM2Vx0wKq5b9YJpQ1cE4fL7nR3sA8uH6gB2iC0kX5mN9oP4rS1tU7vW3yZ6aD

