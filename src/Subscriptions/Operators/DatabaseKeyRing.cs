using System.Xml.Linq;
using Dapper;
using Microsoft.AspNetCore.DataProtection.Repositories;
using Npgsql;

namespace Subscriptions.Operators;

/// <summary>
/// Keeps ASP.NET Core Data Protection's key ring in PostgreSQL (<c>data_protection_keys</c>), which every instance shares.
/// By default each process keeps its own under <c>$HOME/.aspnet</c>, or in memory when that cannot be written (a read-only
/// container): a console session or form from one replica was refused by another, and every restart signed operators out.
/// The framework has stores for the file system, Redis, Azure and Entity Framework, none for plain Npgsql; this is the
/// whole of one (the framework calls it synchronously). The keys are stored as the framework writes them, unencrypted, as
/// its Entity Framework store does: whoever can read the database could forge a console session, as they can read the
/// operators' password hashes and every subscriber's address.
/// </summary>
internal sealed class DatabaseKeyRing(NpgsqlDataSource dataSource) : IXmlRepository
{
    public IReadOnlyCollection<XElement> GetAllElements()
    {
        using var connection = dataSource.OpenConnection();
        return [.. connection.Query<string>("SELECT xml FROM data_protection_keys ORDER BY id").Select(xml => XElement.Parse(xml))];
    }

    public void StoreElement(XElement element, string friendlyName)
    {
        using var connection = dataSource.OpenConnection();
        connection.Execute("INSERT INTO data_protection_keys (friendly_name, xml) VALUES (@friendlyName, @xml)",
            new { friendlyName, xml = element.ToString(SaveOptions.DisableFormatting) });
    }
}
